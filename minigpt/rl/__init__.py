"""What the reinforcement-learning stages share: rollouts from the policy and reward functions."""
