"Real photos: a small folder cut from scikit-learn's two bundled photos trains to a meaningful model with no flags"
import os, time
import numpy as np, pytest
from PIL import Image
from mixup_cb.compare import compare
from mixup_cb.compare.data import load_data

def make_photos(path, n=50, crop=96, seed=0):
    "`n` random `crop`px crops of each of scikit-learn's sample photos (china.jpg, flower.jpg), one class per photo"
    from sklearn.datasets import load_sample_images
    rng = np.random.default_rng(seed)
    for name, im in zip(('china', 'flower'), load_sample_images().images):
        (path/name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            r, c = rng.integers(0, im.shape[0]-crop), rng.integers(0, im.shape[1]-crop)
            Image.fromarray(im[r:r+crop, c:c+crop]).save(path/name/f'{i:03d}.jpg', quality=90)
    return path

def test_photos_sizes(tmp_path):
    "100 photos, 80 to train: bs 64 would make one step an epoch; the data's own choice is bs 8, 10 steps an epoch"
    dls, _ = load_data(make_photos(tmp_path/'photos'))
    assert dls.train.bs == 8 and len(dls.train) == 10

# Two resnet18 fits of 15 epochs: 90-110 s of CPU (5 min on a 2-CPU machine shared three ways), too long for every run
@pytest.mark.skipif(not os.environ.get('MIXUP_CB_SLOW'), reason='slow (two 15-epoch resnet18 fits): set MIXUP_CB_SLOW=1')
def test_photos_learn_with_defaults(tmp_path):
    "With no flags the runs learn: well above the 0.5 of chance, and no warning"
    data = make_photos(tmp_path/'photos')
    t = time.perf_counter()
    tab = compare(data, alphas=[0, 1.], seeds=1, out=tmp_path/'out', verbose=False)   # batch size and epochs left to the data
    print(f'{time.perf_counter()-t:.0f} s')
    assert tab.not_learned.tolist() == [0, 0]
    assert (tab.final_acc >= 0.85).all(), tab    # chance is about 0.5
