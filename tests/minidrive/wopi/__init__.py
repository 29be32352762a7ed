"""WOPI app of the mini Drive: discovery → cache, and the launch URL for editing."""
