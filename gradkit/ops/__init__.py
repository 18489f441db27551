"""Every op, grouped by family; importing this module fills the registry."""
from gradkit.ops.elementwise import *  # noqa: F401,F403
from gradkit.ops.shape import *  # noqa: F401,F403
from gradkit.ops.elementwise import abs_ as abs  # noqa: F401
from gradkit.ops.shape import split  # noqa: F401
from gradkit.ops.reduce import *  # noqa: F401,F403
from gradkit.ops.reduce import sum_ as sum, max_ as max, min_ as min  # noqa: F401
from gradkit.ops.linalg import *  # noqa: F401,F403
from gradkit.ops.activation import *  # noqa: F401,F403
from gradkit.ops.loss import *  # noqa: F401,F403
