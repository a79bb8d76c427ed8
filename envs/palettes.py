"""The colour palettes darla's envs draw scenes from.

Dark floors, mid-tone walls, saturated objects: every pair of colours that can share a frame is
far apart in RGB, and none is near the agent's white. Seek-avoid v0 and v1 draw their rooms from
:data:`FLOORS` and :data:`WALLS`; v0's objects and reacher's targets are :data:`SATURATED`.
"""

from __future__ import annotations

FLOORS: dict[str, tuple[int, int, int]] = {
    "dark grey": (50, 50, 50),
    "navy": (25, 30, 105),
    "maroon": (105, 25, 40),
    "dark green": (25, 90, 45),
}
WALLS: dict[str, tuple[int, int, int]] = {
    "light grey": (170, 170, 170),
    "teal": (30, 145, 145),
    "purple": (125, 65, 170),
    "tan": (185, 150, 95),
}
SATURATED: dict[str, tuple[int, int, int]] = {
    "red": (235, 45, 45),
    "blue": (50, 110, 255),
    "green": (60, 225, 80),
    "orange": (255, 160, 25),
}
AGENT_WHITE: tuple[int, int, int] = (255, 255, 255)
"""The agent's colour: in no palette, so the agent is never confused with a scene colour."""
