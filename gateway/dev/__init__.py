"""``make run``: the demo app and the embedded S3 server. Not used in production."""
