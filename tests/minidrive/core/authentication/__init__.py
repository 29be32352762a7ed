"""Authentication package of the mini Drive core app."""
