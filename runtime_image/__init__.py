"""The Easel diffusion runtime: an SD WebUI (AUTOMATIC1111) API subset served by diffusers.

Everything lives in :mod:`runtime_image.server`; the image is built from ``runtime_image/Dockerfile``.
"""
