"""Outputs of a dance: an MP4 with the music (render), a self-contained 3-D page (viewer)
and a BVH for animation tools (bvh); ``stage`` holds what they share."""
