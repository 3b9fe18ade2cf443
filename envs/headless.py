"""Headless OpenGL for Miniworld.

pyglet must be told to use EGL before miniworld (and so pyglet.gl) is imported, in every
process that renders, subprocess workers included; PYOPENGL_PLATFORM=egl alone is not enough.
Importing this module first is all a caller needs, so users never set it themselves.
"""

import pyglet

pyglet.options["headless"] = True
