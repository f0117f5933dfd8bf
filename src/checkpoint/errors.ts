// The error of the checkpoint layer: a file, a tensor or a record that cannot be trusted or does not
// fit. Every message names the file (and the tensor or field) and the value that was wrong, and
// nothing is loaded half-way.

import { ShardlabError } from "../tensor/errors.ts";

export class CheckpointError extends ShardlabError {}
