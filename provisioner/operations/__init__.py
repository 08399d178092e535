"""The use cases between the command line and the stages: plain values in, results out."""
