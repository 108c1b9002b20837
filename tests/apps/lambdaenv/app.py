"""Reports the environment and context a Lambda handler sees."""

import os

NAMES = ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_EXECUTION_ENV", "AWS_LAMBDA_FUNCTION_NAME",
         "AWS_LAMBDA_FUNCTION_VERSION", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
         "AWS_LAMBDA_INITIALIZATION_TYPE", "AWS_LAMBDA_LOG_GROUP_NAME",
         "AWS_LAMBDA_LOG_STREAM_NAME", "LAMBDA_TASK_ROOT", "_HANDLER", "K_SERVICE", "LANG", "TZ",
         "GREETING")


def lambda_handler(event, context):
    return {
        "env": {n: os.environ.get(n) for n in NAMES},
        "cwd": os.getcwd(),
        "arn": context.invoked_function_arn,
        "log_group": context.log_group_name,
        "log_stream": context.log_stream_name,
    }
