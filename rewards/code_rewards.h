// The `code` reward: runs the program in a completion against the task's tests in the sandbox.
// Styles: humaneval (prompt + completion + test + check(entry_point)), mbpp (assert list),
// stdio (stdin/stdout cases, any sandbox language); scoring: binary or fraction of tests passed.
#pragma once

#include "rewards/reward.h"

namespace ponder::rewards {

// Registers "code". Options (all optional): style ("humaneval" | "mbpp" | "stdio", default
// humaneval), scoring ("binary" | "fraction"), language (stdio only; default python),
// time_limit_s, memory_mb, max_output_chars (in details), unsafe_no_isolation.
// Reference per style: humaneval {test, entry_point, prompt?} (prompt defaults to the sample's);
// mbpp {test_list, test_imports?, test_setup_code?}; stdio {tests: [{input, output}]}.
void register_code_rewards(RewardRegistry& registry);

}  // namespace ponder::rewards
