"""Merged exports of fine-tuned models (issue 16, "own your weights"): POST
/v1/models/{model}/exports makes a zip of the base's weights with the adapter merged in, as a file
of the organization, in a process of its own (trainer/export.py).

    service     the API's side: create (checks the model), retrieve, list
    store       rows as the API sees them, and their wire form
    claims      rows as the gateways that run them see them: claim, lease, recover, finish
    runner      the loop: start queued exports, supervise their processes, record the outcome
    launcher    the export process (`python -m trainer.export`)
    sources     a model's base folder and adapter; the memory an export needs
"""
