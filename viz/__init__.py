"""The interactive viewer behind visualizer.py: request parsing, rendering with cached tri-planes, and the local
web server with its static page."""
