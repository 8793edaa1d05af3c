"""NCE: negative conditional entropy of the target labels given the model's predictions.

Tran, Nguyen and Hassner, "Transferability and Hardness of Supervised Classification
Tasks", ICCV 2019. The paper takes source labels of the target samples as given; as in
the LEEP paper's comparison, the model's own predicted source class stands in for them.
"""

from __future__ import annotations

import numpy as np

from . import register


@register("nce", "NCE: -H(target label | predicted source class) (Tran et al., ICCV 2019)",
          needs_probs=True)
def nce(features, labels, *, probs, **_):
    r"""NCE of predicted source classes ``argmax probs`` ``(n, c)``; higher is better.

    Tran et al., ICCV 2019. With ``z_i = argmax_z probs_iz`` (the first maximum on ties)
    and the empirical joint ``P(y, z) = #{i: y_i = y, z_i = z} / n``::

        NCE = -H(Y | Z) = sum_{y, z} P(y, z) log( P(y, z) / P(z) ).

    0 when the predicted source class determines the target label, ``-log k`` at worst
    for ``k`` balanced classes. ``features`` are not used. Cost ``O(n c)``, memory
    ``O(k c)``. Minimum: one sample per class. Depends on no option.
    """
    c = probs.shape[1]
    k = int(labels.max()) + 1
    predicted = np.argmax(probs, axis=1)
    joint = np.bincount(labels * c + predicted, minlength=k * c).reshape(k, c) / len(labels)
    marginal = joint.sum(axis=0)
    used = joint > 0
    conditional = joint[used] / np.broadcast_to(marginal, joint.shape)[used]
    return float(np.sum(joint[used] * np.log(conditional)))
