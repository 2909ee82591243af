"""Plain pytest tests of the core API that the notebooks do not make: the (event, exception) cases of a fit that raises
that nbs/04_callback.ipynb leaves out, and CutMix's pasted inputs being new tensors."""
import pytest, torch
import fastai.callback.progress  # Learner.no_bar
from mixup_cb.all import *
from mixup_cb.mix import cutmix_inputs
from mixup_cb.test_utils import digits_learner, RaiseAt

# nbs/04_callback.ipynb (`check_restored`) raises RuntimeError from after_pred and after_loss, KeyboardInterrupt from
# before_batch and ValueError from after_backward: the other cases of events and exceptions are here
@pytest.mark.parametrize('event,exc', [('before_batch', RuntimeError), ('after_pred', KeyboardInterrupt),
                                       ('after_loss', KeyboardInterrupt), ('after_step', RuntimeError),
                                       ('after_step', KeyboardInterrupt)])
def test_loss_restored_after_exception(event, exc, tmp_path):
    learn = digits_learner(bs=64, path=tmp_path).mixup()
    orig = learn.loss_func
    with learn.no_logging(), learn.no_bar():
        with pytest.raises(exc): learn.fit(1, cbs=RaiseAt(event, exc, at=2))
        assert learn.loss_func is orig
        learn.fit(1)  # and a second fit works
    assert learn.loss_func is orig and learn.mix_up.lam is None

def test_paste_is_new_tensor_from_partner():
    "CutMix's pasted inputs are new tensors (never the caller's batch), each box from the partner"
    x = torch.randn(16, 3, 8, 8); x0 = x.clone(); perm, lam = sample_perm(16), sample_lam(16, 1.)
    (xm,), lc, boxes, _ = cutmix_inputs((x,), perm, lam)
    m = box_mask(boxes, 8, 8)[:,None]
    assert torch.equal(xm, x*~m + x[perm]*m) and torch.equal(x, x0) and xm.data_ptr()!=x.data_ptr()
