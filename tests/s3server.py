"""Placeholder; replaced by the rclone S3 server fixture."""
