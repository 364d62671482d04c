"""vllm-fleet: `pulumi up -s <stack>` deploys the model its stacks/Pulumi.<stack>.yaml describes."""

from fleet import program

program.run()
