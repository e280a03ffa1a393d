"""What a process runs with: CPU threads and precision (chosen before TensorFlow starts), and
the programs of its own environment."""
