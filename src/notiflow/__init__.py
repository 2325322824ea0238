"""notiflow: notifications and background jobs for a multi-tenant social-media platform."""

__version__ = "0.1.0"
