"""gk.distributed's errors, in a module of their own: the world and its NCCL setup
(which the world calls) both raise them, so neither imports the other for them."""
from gradkit.errors import GradkitError


class DistributedError(GradkitError, RuntimeError):
    """A collective that cannot run: no MPI, ranks that disagree, a bad argument."""

    __module__ = "gradkit.distributed.world"  # where it was defined first (pickles, reprs)


class CollectiveTimeoutError(DistributedError):
    """A collective waited longer than the timeout (another rank failed or diverged)."""

    __module__ = "gradkit.distributed.world"
