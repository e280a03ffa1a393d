"""Tests of the code itself: configuration, the command line, the declared dependencies of
each stage, tracking and the promotion lock."""
