"""What a node name may be: it becomes an etcd key and a BIRD protocol name."""

from __future__ import annotations

import re

NODENAME = re.compile(r"^[a-z0-9]([a-z0-9.\-]{0,61}[a-z0-9])?$")
