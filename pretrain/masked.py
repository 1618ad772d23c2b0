"""Registers the masked-prediction methods: `mae`, `masked_features`, `bert`.

The methods live in `pretrain.mae`, `pretrain.masked_features` and
`pretrain.bert`; their configs and checks in `pretrain.masked_config`.
"""

from pretrain import masked_config
from pretrain.bert import pretrain_bert, run_text
from pretrain.mae import pretrain_mae
from pretrain.masked_features import pretrain_masked_features
from pretrain.methods import Method, register

register(
    Method(
        name="mae",
        description="masked autoencoder (ViT) on image or 1-D signal patches",
        defaults=masked_config.mae_config,
        check_config=masked_config.check_mae,
        pretrain=pretrain_mae,
    )
)
register(
    Method(
        name="masked_features",
        description="masked-feature reconstruction with the dense MLP encoder",
        defaults=masked_config.masked_features_config,
        check_config=masked_config.check_masked_features,
        pretrain=pretrain_masked_features,
    )
)
register(
    Method(
        name="bert",
        description="BERT masked byte-token pretraining on a TFDS text dataset",
        defaults=masked_config.bert_config,
        check_config=masked_config.check_bert,
        pretrain=pretrain_bert,
        run=run_text,
    )
)
