"Everything public in mixup_cb: `from mixup_cb.all import *`"
from .core import *
from .mix import *
from .loss import *
from .callback import *
from .cutmix import *
from .functional import *
from .manifold import *
from .show import *
