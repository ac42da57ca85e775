"""The kubesage component library: preprocess, train, evaluate, register.

Each module declares one component. Heavy libraries (torch, torchvision, PIL) are imported
inside the functions, so that loading a pipeline (compile, validate, cached runs) stays fast.
"""
