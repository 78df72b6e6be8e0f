"""Teachable moments: find, measure and train on the states where a little supervision changes the
outcome."""
