"""The steps that run inside a training Job, not for people: `botenv fetch-project` (the
project archive from storage) and `botenv upload` (the trained model to storage)."""
