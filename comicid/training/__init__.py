"""Training recipes (one module each: ``ssl``, ``finetune``, ...) over one shared loop (``loop``).

A recipe is a model, data, a loss and a config (``config``); device placement, mixed precision,
checkpoints, resume, validation and early stopping live once, in :func:`comicid.training.loop.fit`.
Import the recipe modules directly (``from comicid.training.ssl import train_ssl``): importing this
package stays cheap for commands that never train.
"""
