// Ending a run cleanly on SIGINT or SIGTERM. While an InterruptHandlers object lives,
// the first signal only records itself: the training loop sees it after the step in
// progress, writes a checkpoint and returns, and the program says how to resume and
// exits with 128 + the signal. A second signal ends the process at once; every output
// file is replaced by rename (atomic_file.hpp), so even then none is left half-written.
#pragma once

namespace eqpm {

class InterruptHandlers {
 public:
  InterruptHandlers();   // installs the handlers and clears any earlier request
  ~InterruptHandlers();  // restores the previous handlers
  InterruptHandlers(const InterruptHandlers&) = delete;
  InterruptHandlers& operator=(const InterruptHandlers&) = delete;
};

// The signal that asked the run to stop, or 0.
int interrupt_signal();

// Records a stop request as the handler does (for tests and callers that stop a run).
void request_interrupt(int signal);
void clear_interrupt();

}  // namespace eqpm
