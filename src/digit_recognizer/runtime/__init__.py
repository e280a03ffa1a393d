"""What a process runs with, chosen before TensorFlow starts: CPU threads and precision."""
