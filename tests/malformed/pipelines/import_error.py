import no_such_module_kubesage  # noqa: F401
