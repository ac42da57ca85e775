from kubesage import component, pipeline


@component(mounts={"nfs": "/nfs"})
def reads_nfs(path: str = "/nfs/data") -> int:
    import os

    return len(os.listdir(path))


@pipeline(name="unknown-mount")
def unknown_mount() -> None:
    reads_nfs()
