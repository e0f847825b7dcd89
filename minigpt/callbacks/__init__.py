"""Lightning callbacks MiniGPT adds: samples, throughput, model-folder export."""
