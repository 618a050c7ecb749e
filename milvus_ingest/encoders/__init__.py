"""Encoders: the Instructor embedding function (``instructor``) and the engines that run it."""
