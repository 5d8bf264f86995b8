from .base import *  # noqa: F403

DEBUG = False
SECRET_KEY = "wagtail-test-site-insecure-0123456789abcdefghijklmnopqrstuvwxyz"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
