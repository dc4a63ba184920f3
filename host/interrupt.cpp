// SIGINT / SIGTERM handling for runs (interrupt.hpp).
#include "host/interrupt.hpp"

#include <signal.h>
#include <unistd.h>

#include <csignal>

namespace eqpm {
namespace {

volatile std::sig_atomic_t g_signal = 0;
struct sigaction g_previous_int, g_previous_term;

void on_signal(int sig) {
  if (g_signal != 0) {
    // Only async-signal-safe calls here.
    static const char msg[] = "\neqpm: second signal, stopping now\n";
    [[maybe_unused]] const ssize_t n = write(STDERR_FILENO, msg, sizeof msg - 1);
    _exit(128 + sig);
  }
  g_signal = sig;
}

}  // namespace

InterruptHandlers::InterruptHandlers() {
  g_signal = 0;
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;  // reads and writes in progress carry on
  sigaction(SIGINT, &sa, &g_previous_int);
  sigaction(SIGTERM, &sa, &g_previous_term);
}

InterruptHandlers::~InterruptHandlers() {
  sigaction(SIGINT, &g_previous_int, nullptr);
  sigaction(SIGTERM, &g_previous_term, nullptr);
}

int interrupt_signal() { return static_cast<int>(g_signal); }

void request_interrupt(int signal) { g_signal = signal; }

void clear_interrupt() { g_signal = 0; }

}  // namespace eqpm
