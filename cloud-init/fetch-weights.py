"""Downloads a model from the Hugging Face hub into the cache ($HF_HOME), as vllm-fleet-setup's weights step
(rendered from cloud-init/fetch-weights.py; run with the vLLM venv's Python, which has huggingface_hub).

    python fetch-weights.py <repo id> [<revision>]

A download cut off half-way resumes where it stopped when run again on the same disk. Safetensors only where the
repository has them: many repositories carry the same weights twice (.bin and .safetensors). HF_TOKEN, when set,
is read by huggingface_hub from the environment.
"""

import sys

from huggingface_hub import HfApi, snapshot_download


def main(repo: str, revision: str | None) -> None:
    files = HfApi().list_repo_files(repo, revision=revision)
    skip = ["*.pth", "original/*"]
    if any(name.endswith(".safetensors") for name in files):
        skip += ["*.bin", "*.pt"]
    print(snapshot_download(repo, revision=revision, ignore_patterns=skip))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] else None)
