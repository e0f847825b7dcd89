"""Small tasks with gold scorers: SFT data, preference labels, verifiable RL rewards and evaluation.

`get_task("arithmetic")` builds a task by name; `task_names()` lists them.
"""

from minigpt.tasks.arithmetic import Arithmetic
from minigpt.tasks.arithmetic_statement import ArithmeticStatement
from minigpt.tasks.base import Example, Task, get_task, split_of, task_names
from minigpt.tasks.reversal import Reversal
from minigpt.tasks.sentiment import Sentiment
from minigpt.tasks.sorting import Sorting

__all__ = [
    "Arithmetic", "ArithmeticStatement", "Example", "Reversal", "Sentiment", "Sorting", "Task", "get_task",
    "split_of", "task_names",
]  # fmt: skip
