// The CUDA backend (DESIGN.md 5.2-5.4, 7): the Backend interface on one GPU. It owns every
// device array through DeviceBuffers, one stream and one cuBLAS handle, and runs a training
// step as the stages of stages.cuh. Agents live on the device in "device order": grouped by
// family (so a warp runs one family's code) and, for families with a RegretStructure, sorted
// by class; per-agent results are scattered back to population order for the caller.
// Once a step shape (B, equitable or not) has run twice eagerly, its next steps replay a CUDA
// graph of the whole step (Problem::cuda_graphs: auto, on, off); the values that change per step (step number, rows, beta, learning rate,
// Adam's bias corrections) come from a small device block refreshed by one copy before each
// launch. Nothing inside a step waits for the host; the step ends with one read of its
// scalars (the caller needs the stats, and the finite flag decides Adam's step counter).
//
// Regrets take the structured path of 5.4 (regret_structure.hpp) where a family has a
// structure and it pays, as Problem::regret_path says (config.hpp: auto, structured, generic,
// reference; the last two run every agent on the generic path).
#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "eqpm/cuda_backend.hpp"
#include "eqpm/error.hpp"
#include "eqpm/regret_structure.hpp"
#include "eqpm/step_stages.hpp"
#include "stages.cuh"

namespace eqpm::cuda {
namespace {

// The CUDA reading of eqpm::RegretPath: reference runs the generic kernels (the CPU's
// reference loop has no separate kernel).
enum class KernelPath { automatic, generic, structured };

KernelPath kernel_path(eqpm::RegretPath r) {
  switch (r) {
    case eqpm::RegretPath::automatic: return KernelPath::automatic;
    case eqpm::RegretPath::structured: return KernelPath::structured;
    case eqpm::RegretPath::generic:
    case eqpm::RegretPath::reference: return KernelPath::generic;
  }
  return KernelPath::automatic;
}

// Memory limits of the plan (bytes). Class regrets E are K x B x S floats; the per-tile
// partials of the generic path are tiles x B x S doubles per family.
constexpr std::size_t kStructuredBudget = std::size_t(512) << 20;
constexpr std::size_t kScorePartialBudget = std::size_t(128) << 20;
constexpr int kMaxTiles = 256;
constexpr long kAgentsPerTile = 1024;
constexpr int kMaxChunks = 16;
constexpr int kEvalChunkRows = 4096;
constexpr std::size_t kCublasWorkspace = std::size_t(32) << 20;
constexpr int kStageEvents = 7;
constexpr int kMaxGraphs = 4;

// What lives on the device for one family.
struct FamilyPlan {
  int slot = 0;
  long n = 0;      // agents
  long begin = 0;  // offset in device order
  bool pathwise = false;
  bool structured = false;
  DeviceBuffer<unsigned char> params;  // n x sizeof(Params), device order
  // structured path (5.4)
  int J = 0, classes = 0, K = 0;
  DeviceBuffer<unsigned char> units;   // K x sizeof(Params), class-major
  DeviceBuffer<std::int64_t> seg;      // classes + 1 agent offsets
  DeviceBuffer<int> class_of;          // n
  DeviceBuffer<double> coef;           // n x J
  DeviceBuffer<float> E;               // K x (max B * S)
  DeviceBuffer<float> dE;              // K x max B x H (pathwise only)
  DeviceBuffer<double> Etot, Wc;       // K
  DeviceBuffer<double> Wpart;          // K x splits
  int splits = 1;                      // slices per class in the class-weight reduction
  // pass 2: per-tile (generic) or per-chunk (structured) partials
  int tiles = 0;
  int slab = 0;   // first slab in partial_x (score) or partial_g (pathwise)
  int slabs = 0;
};

template <class T>
DeviceBuffer<T> upload_vector(const std::vector<T>& v, cudaStream_t stream) {
  DeviceBuffer<T> d(v.size());
  d.upload(v.data(), v.size(), stream);
  return d;
}

class CudaBackend final : public Backend {
 public:
  CudaBackend() = default;
  ~CudaBackend() override;
  std::string name() const override { return "cuda"; }

 protected:
  void setup_impl() override;
  void set_state_impl(const BackendState& s) override;
  BackendState state_impl() const override;
  std::vector<float> params_impl() const override;
  StepStats step_impl(const StepSpec& spec, StepTrace* trace) override;
  EvalResult evaluate_impl(const std::vector<long>& rows) override;
  std::vector<float> predict_impl(const std::vector<long>& rows) override;

 private:
  struct GraphEntry {
    int batch = 0;
    bool equitable = false;
    int runs = 0;
    cudaGraphExec_t exec = nullptr;
    std::array<double, kStageEvents - 1> fraction{};  // stage shares of the last warm eager step
  };

  void release_handles() noexcept;
  template <class F>
  void plan_family(FamilyPlan& plan, const FamilyGroup<F>& group, KernelPath path,
                   std::vector<long>& perm, std::vector<double>& w_raw,
                   std::vector<double>& w_over_W);
  // One step's work, passed through the stages of step_stages.hpp's run_step; the values
  // the kernels read live on the device (the step block, the scalars), so a captured graph
  // replays any step of the same shape.
  struct StepWork {
    int B = 0, S = 0, H = 0;
    long BS = 0, BH = 0;
    bool equitable = false;
    cudaEvent_t* events = nullptr;  // stage timing events (eager steps), or null
    const StepParams* dp = nullptr;
    const std::int64_t* rows = nullptr;
    StepScalars* sc = nullptr;
    SampleSet set{};
    double inv_bs = 0.0;
  };
  template <class X, class W>
  friend void eqpm::run_step(X& x, W& w);
  void upload_step(const StepSpec& spec);
  GraphEntry* launch_step(int B, bool equitable, bool* replay);
  void account_stage_times(GraphEntry* entry, bool replay, double wall);
  void download_trace(int B, bool equitable, StepTrace& trace);
  void enqueue_step(int B, bool equitable, cudaEvent_t* events);
  void mark(const StepWork& w, int i);
  void stage_forward(StepWork& w);
  void stage_sample(StepWork& w);
  void stage_regrets(StepWork& w);
  void stage_weights(StepWork& w);
  void stage_advantages(StepWork& w);
  void stage_gradient(StepWork& w);
  void stage_backward(StepWork& w);
  void stage_update(StepWork& w);
  // An objective without a flat form (objectives.hpp): Rhat and Rbar go to the host, which
  // evaluates it and its weights with the CPU's code, and the values and omega come back.
  void host_objective(StepScalars* scalars);
  GraphEntry& graph_entry(int B, bool equitable);
  // Captures the step of entry's shape into entry.exec. A failure throws under
  // CudaGraphs::on; under automatic it is counted, warned about, and returns false (every
  // later step runs eagerly).
  bool capture_graph(GraphEntry& entry);
  void forward_rows(const std::vector<long>& rows);  // eval_mu_ for rows (uploaded to eval_rows_)
  std::vector<double> to_population_order(const DeviceBuffer<double>& d) const;
  void sync() const { EQPM_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

  // handles
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  cudaEvent_t events_[kStageEvents] = {};
  std::vector<GraphEntry> graphs_;
  bool use_graphs_ = true;
  DeviceBuffer<unsigned char> cublas_workspace_;
  ForwardKernel forward_kind_ = ForwardKernel::fused_shared;

  // data
  DeviceBuffer<float> x_all_, y_all_, demand_;
  DeviceBuffer<std::int64_t> t_all_;
  RegretContext ctx_;

  // population (device order)
  long N_ = 0;
  double wsum_ = 0.0;
  std::vector<long> perm_;  // device position -> population index
  DeviceBuffer<double> w_raw_, w_over_W_;
  std::vector<FamilyPlan> plans_;
  int slabs_x_ = 0, slabs_g_ = 0;

  // the objective: flat_ on the device, or objective_ on the host (host_objective)
  std::shared_ptr<const Objective> objective_;
  FlatObjective flat_;
  bool on_host_ = false;
  std::vector<int> host_group_;                                  // device order
  std::vector<double> host_w_, host_rhat_, host_rbar_, host_omega_;  // device order
  double host_values_[2] = {0.0, 0.0};                           // F(Rhat), F(Rbar)
  AgentSet host_agents_;

  // model, optimiser and smoothing state
  long P_ = 0;
  std::uint64_t adam_step_ = 0;
  bool rbar_started_ = false;
  DeviceBuffer<float> theta_, adam_m_, adam_v_;
  DeviceBuffer<double> rbar_, rbar_new_, rhat_, omega_;
  DeviceBuffer<DeviceState> state_;

  // step scratch, sized in setup
  DeviceBuffer<unsigned char> step_block_;  // StepParams, then the rows
  PinnedBuffer<unsigned char> step_host_;
  DeviceBuffer<float> mu_, pre_, eps_, yhat_, y_b_;
  DeviceBuffer<std::int64_t> t_b_;
  DeviceBuffer<double> x_b_, partial_x_, partial_g_, X_, A_, G_, g_, reduce_;
  DeviceBuffer<double> act_d_, delta0_, delta1_, params_d_, grad_d_;
  DeviceBuffer<float> grad_f_;
  DeviceBuffer<StepScalars> scalars_;
  PinnedBuffer<StepScalars> scalars_host_;

  // evaluation scratch, grow-only
  PinnedBuffer<std::int64_t> rows_host_;
  DeviceBuffer<std::int64_t> eval_rows_, eval_t_;
  DeviceBuffer<float> eval_mu_, eval_pre_, eval_y_;
  DeviceBuffer<double> eval_regret_, eval_errors_;
  PinnedBuffer<double> errors_host_;
};

CudaBackend::~CudaBackend() { release_handles(); }

void CudaBackend::release_handles() noexcept {
  if (stream_) EQPM_CUDA_REPORT(cudaStreamSynchronize(stream_));
  for (auto& g : graphs_)
    if (g.exec) EQPM_CUDA_REPORT(cudaGraphExecDestroy(g.exec));
  graphs_.clear();
  for (auto& e : events_) {
    if (e) EQPM_CUDA_REPORT(cudaEventDestroy(e));
    e = nullptr;
  }
  if (cublas_) {
    const cublasStatus_t st = cublasDestroy(cublas_);
    if (st != CUBLAS_STATUS_SUCCESS)
      std::fprintf(stderr, "eqpm: cublasDestroy failed during cleanup: %s\n", cublasGetStatusString(st));
    cublas_ = nullptr;
  }
  if (stream_) EQPM_CUDA_REPORT(cudaStreamDestroy(stream_));
  stream_ = nullptr;
}

template <class F>
void CudaBackend::plan_family(FamilyPlan& plan, const FamilyGroup<F>& group, KernelPath path,
                              std::vector<long>& perm, std::vector<double>& w_raw,
                              std::vector<double>& w_over_W) {
  using Params = typename F::Params;
  const Problem& p = problem_;
  const long n = static_cast<long>(group.index.size());
  const long max_pairs = static_cast<long>(p.max_batch) * p.samples;
  const int H = p.layout.output_dim();
  plan.n = n;
  plan.begin = static_cast<long>(perm.size());
  // EV agents under the conditional gradient enter G like the pathwise families (families.hpp).
  plan.pathwise = uses_pathwise<F>(p.estimator) ||
                  (F::tag == Family::ev_charging && p.ev_conditional());

  std::vector<long> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0L);
  if constexpr (RegretStructure<F>::available) {
    using S = RegretStructure<F>;
    if (path != KernelPath::generic && n > 0) {
      std::stable_sort(order.begin(), order.end(), [&](long a, long b) {
        return S::key(group.params[static_cast<size_t>(a)]) < S::key(group.params[static_cast<size_t>(b)]);
      });
      std::vector<std::int64_t> seg{0};
      for (long i = 1; i < n; ++i)
        if (S::key(group.params[static_cast<size_t>(order[static_cast<size_t>(i)])]) !=
            S::key(group.params[static_cast<size_t>(order[static_cast<size_t>(i - 1)])]))
          seg.push_back(i);
      seg.push_back(n);
      const int classes = static_cast<int>(seg.size()) - 1;
      const long K = static_cast<long>(classes) * S::bases;
      std::size_t bytes = sizeof(float) * static_cast<std::size_t>(K) * static_cast<std::size_t>(max_pairs);
      if (plan.pathwise)
        bytes += sizeof(float) * static_cast<std::size_t>(K) * static_cast<std::size_t>(p.max_batch) * H;
      const bool fits = bytes <= kStructuredBudget && K <= (1L << 30);
      // Automatic: the shared per-class work pays when there are fewer basis rows than agents.
      if (fits && (path == KernelPath::structured || K <= n)) {
        plan.structured = true;
        plan.J = S::bases;
        plan.classes = classes;
        plan.K = static_cast<int>(K);
        std::vector<Params> units(static_cast<size_t>(K));
        std::vector<int> class_of(static_cast<size_t>(n));
        std::vector<double> coef(static_cast<size_t>(n) * S::bases);
        for (int c = 0; c < classes; ++c) {
          const Params& first = group.params[static_cast<size_t>(order[static_cast<size_t>(seg[static_cast<size_t>(c)])])];
          for (int j = 0; j < S::bases; ++j) units[static_cast<size_t>(c) * S::bases + j] = S::unit(first, j);
          for (long i = seg[static_cast<size_t>(c)]; i < seg[static_cast<size_t>(c) + 1]; ++i) {
            const Params& prm = group.params[static_cast<size_t>(order[static_cast<size_t>(i)])];
            class_of[static_cast<size_t>(i)] = c;
            for (int j = 0; j < S::bases; ++j) coef[static_cast<size_t>(i) * S::bases + j] = S::coef(prm, j);
          }
        }
        plan.units.allocate(units.size() * sizeof(Params));
        plan.units.upload(reinterpret_cast<const unsigned char*>(units.data()), units.size() * sizeof(Params), stream_);
        plan.seg = upload_vector(seg, stream_);
        plan.class_of = upload_vector(class_of, stream_);
        plan.coef = upload_vector(coef, stream_);
        plan.E.allocate(static_cast<std::size_t>(K) * static_cast<std::size_t>(max_pairs));
        if (plan.pathwise) plan.dE.allocate(static_cast<std::size_t>(K) * p.max_batch * H);
        plan.Etot.allocate(static_cast<std::size_t>(K));
        plan.Wc.allocate(static_cast<std::size_t>(K));
        // Slices of at most ~2048 agents for the largest class, up to kMaxClassSplits.
        long largest = 0;
        for (int c = 0; c < classes; ++c)
          largest = std::max<long>(largest, seg[static_cast<size_t>(c) + 1] - seg[static_cast<size_t>(c)]);
        plan.splits = static_cast<int>(std::clamp<long>((largest + 2047) / 2048, 1, kMaxClassSplits));
        plan.Wpart.allocate(static_cast<std::size_t>(K) * static_cast<std::size_t>(plan.splits));
        sync();  // the host vectors above go out of scope
      }
    }
  }
  if (path == KernelPath::structured && !plan.structured && n > 0 && RegretStructure<F>::available)
    throw Error(std::string("CUDA backend: the structured regret path does not fit in memory for the ") +
                F::name + " family");

  std::vector<Params> params(static_cast<size_t>(n));
  for (long i = 0; i < n; ++i) {
    const long g = order[static_cast<size_t>(i)];
    const long agent = group.index[static_cast<size_t>(g)];
    params[static_cast<size_t>(i)] = group.params[static_cast<size_t>(g)];
    perm.push_back(agent);
    w_raw.push_back(p.population->agents[static_cast<size_t>(agent)].weight);
    w_over_W.push_back(group.weight[static_cast<size_t>(g)]);
  }
  plan.params.allocate(params.size() * sizeof(Params));
  plan.params.upload(reinterpret_cast<const unsigned char*>(params.data()), params.size() * sizeof(Params), stream_);
  sync();

  if (n == 0) return;
  if (plan.structured) {
    plan.tiles = std::min(plan.K, kMaxChunks);
  } else if (plan.pathwise) {
    plan.tiles = static_cast<int>(std::clamp<long>((n + kAgentsPerTile - 1) / kAgentsPerTile, 1, kMaxTiles));
  } else {
    const long cap = std::max<long>(1, static_cast<long>(kScorePartialBudget / (sizeof(double) * static_cast<std::size_t>(max_pairs)) / Families::size));
    plan.tiles = static_cast<int>(std::clamp<long>((n + kAgentsPerTile - 1) / kAgentsPerTile, 1, std::min<long>(kMaxTiles, cap)));
  }
  plan.tiles = static_cast<int>(std::min<long>(plan.tiles, n));
  plan.slabs = plan.tiles;
  if (plan.pathwise) {
    plan.slab = slabs_g_;
    slabs_g_ += plan.slabs;
  } else {
    plan.slab = slabs_x_;
    slabs_x_ += plan.slabs;
  }
}

void CudaBackend::setup_impl() {
  release_handles();
  const Problem& p = problem_;
  const Dataset& d = *p.data;
  const MlpLayout& L = p.layout;
  const int H = L.output_dim(), S = p.samples, maxB = p.max_batch, in = L.input_dim();
  if (H > kMaxHorizon) throw Error("CUDA backend: horizon above " + std::to_string(kMaxHorizon));
  if (maxB < 1) throw Error("CUDA backend: max_batch must be at least 1");

  EQPM_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  for (auto& e : events_) EQPM_CUDA_CHECK(cudaEventCreate(&e));
  EQPM_CUBLAS_CHECK(cublasCreate(&cublas_));
  // cublasSetStream resets the workspace, so the workspace comes after it; a fixed user
  // workspace keeps cuBLAS from allocating while a graph is captured.
  EQPM_CUBLAS_CHECK(cublasSetStream(cublas_, stream_));
  cublas_workspace_.allocate(kCublasWorkspace);
  EQPM_CUBLAS_CHECK(cublasSetWorkspace(cublas_, cublas_workspace_.data(), cublas_workspace_.bytes()));
  EQPM_CUBLAS_CHECK(cublasSetPointerMode(cublas_, CUBLAS_POINTER_MODE_HOST));
  use_graphs_ = p.cuda_graphs != CudaGraphs::off;
  forward_kind_ = choose_forward_kernel(L);

  // Dataset and demand profile.
  x_all_ = upload_vector(d.x, stream_);
  y_all_ = upload_vector(d.y, stream_);
  t_all_ = upload_vector(std::vector<std::int64_t>(d.t.begin(), d.t.end()), stream_);
  demand_ = upload_vector(p.demand, stream_);
  ctx_ = RegretContext{};
  ctx_.demand = demand_.data();
  ctx_.demand_length = static_cast<long>(p.demand.size());
  ctx_.floor = p.floor;
  sync();

  // Population, grouped by family in registry order.
  const Population& pop = *p.population;
  N_ = pop.size();
  wsum_ = 0.0;
  for (const Agent& a : pop.agents) wsum_ += a.weight;  // power_mean's order
  const KernelPath path = kernel_path(p.regret_path);
  const FamilyGroups groups = group_population(pop);
  perm_.clear();
  perm_.reserve(static_cast<size_t>(N_));
  std::vector<double> w_raw, w_over_W;
  plans_.clear();
  plans_.resize(static_cast<size_t>(Families::size));
  slabs_x_ = slabs_g_ = 0;
  int slot = 0;
  Families::for_each([&](auto fam) {
    using F = decltype(fam);
    FamilyPlan& plan = plans_[static_cast<size_t>(slot)];
    plan.slot = slot++;
    plan_family<F>(plan, std::get<FamilyGroup<F>>(groups), path, perm_, w_raw, w_over_W);
  });
  w_raw_ = upload_vector(w_raw, stream_);
  w_over_W_ = upload_vector(w_over_W, stream_);

  objective_ = p.objective ? p.objective : power_objective(p.q);
  on_host_ = objective_->flat() == nullptr;
  if (!on_host_) flat_ = *objective_->flat();
  if (on_host_) {
    if (p.cuda_graphs == CudaGraphs::on)
      throw ConfigError("--cuda-graphs on: objective " + objective_->spec() +
                        " is evaluated on the host within each step, which a CUDA graph cannot "
                        "hold; use --cuda-graphs auto or off");
    use_graphs_ = false;
    const std::vector<int> groups = pop.groups();
    host_group_.resize(static_cast<size_t>(N_));
    for (size_t i = 0; i < host_group_.size(); ++i) host_group_[i] = groups[static_cast<size_t>(perm_[i])];
    host_w_ = w_raw;
    host_rhat_.assign(static_cast<size_t>(N_), 0.0);
    host_rbar_.assign(static_cast<size_t>(N_), 0.0);
    host_omega_.assign(static_cast<size_t>(N_), 0.0);
    host_agents_ = AgentSet{host_w_.data(), host_group_.data(), perm_.data(), N_,
                            pop.group_count(), wsum_};
  }

  // Model and optimiser state, initialised exactly as on the CPU.
  P_ = L.parameter_count;
  const std::vector<float> theta = init_mlp_parameters(L, p.seed);
  theta_ = upload_vector(theta, stream_);
  adam_m_.allocate(static_cast<size_t>(P_));
  adam_v_.allocate(static_cast<size_t>(P_));
  adam_m_.zero(stream_);
  adam_v_.zero(stream_);
  adam_step_ = 0;
  rbar_started_ = false;
  const size_t N = static_cast<size_t>(N_);
  rbar_.allocate(N);
  rbar_.zero(stream_);
  rbar_new_.allocate(N);
  rhat_.allocate(N);
  omega_.allocate(N);
  state_.allocate(1);
  state_.zero(stream_);

  // Step scratch for the largest batch.
  const size_t B = static_cast<size_t>(maxB), A = static_cast<size_t>(L.activation_count());
  const size_t pairs = B * static_cast<size_t>(S);
  step_block_.allocate(kStepRowsOffset + B * sizeof(std::int64_t));
  step_host_.reserve(kStepRowsOffset + B * sizeof(std::int64_t));
  mu_.allocate(B * H);
  pre_.allocate(B * A);
  eps_.allocate(pairs * H);
  yhat_.allocate(pairs * H);
  y_b_.allocate(B * H);
  t_b_.allocate(B);
  x_b_.allocate(B * static_cast<size_t>(in));
  partial_x_.allocate(static_cast<size_t>(slabs_x_) * pairs);
  partial_g_.allocate(static_cast<size_t>(slabs_g_) * B * H);
  X_.allocate(pairs);
  A_.allocate(pairs);
  G_.allocate(B * H);
  g_.allocate(B * H);
  reduce_.allocate(4 * static_cast<size_t>(kMaxReductionBlocks));
  act_d_.allocate(B * A);
  delta0_.allocate(B * static_cast<size_t>(L.max_width()));
  delta1_.allocate(B * static_cast<size_t>(L.max_width()));
  params_d_.allocate(static_cast<size_t>(P_));
  grad_d_.allocate(static_cast<size_t>(P_));
  grad_f_.allocate(static_cast<size_t>(P_));
  scalars_.allocate(1);
  scalars_host_.reserve(1);
  errors_host_.reserve(2);
  eval_errors_.allocate(2);
  sync();
}

CudaBackend::GraphEntry& CudaBackend::graph_entry(int B, bool equitable) {
  for (auto& g : graphs_)
    if (g.batch == B && g.equitable == equitable) return g;
  graphs_.push_back(GraphEntry{});
  graphs_.back().batch = B;
  graphs_.back().equitable = equitable;
  return graphs_.back();
}

// One step enqueued on the stream: step_stages.hpp's stages in their order (the same
// order the CPU runs), eagerly or under graph capture.
void CudaBackend::enqueue_step(int B, bool eq, cudaEvent_t* ev) {
  const Problem& p = problem_;
  StepWork w;
  w.B = B;
  w.S = p.samples;
  w.H = p.layout.output_dim();
  w.BS = static_cast<long>(B) * w.S;
  w.BH = static_cast<long>(B) * w.H;
  w.equitable = eq;
  w.events = ev;
  w.dp = reinterpret_cast<const StepParams*>(step_block_.data());
  w.rows = reinterpret_cast<const std::int64_t*>(step_block_.data() + kStepRowsOffset);
  w.sc = scalars_.data();
  w.set = SampleSet{yhat_.data(), y_b_.data(), t_b_.data(), B, w.S, w.H};
  if (p.ev_conditional()) {
    w.set.mu = mu_.data();
    w.set.sigma = reinterpret_cast<const float*>(step_block_.data() + offsetof(StepParams, sigma));
  }
  w.inv_bs = 1.0 / static_cast<double>(w.BS);
  run_step(*this, w);
}

void CudaBackend::mark(const StepWork& w, int i) {
  if (w.events) EQPM_CUDA_CHECK(cudaEventRecord(w.events[i], stream_));
}

// The minibatch's rows, the MLP forward pass, the MSE and MSEbar.
void CudaBackend::stage_forward(StepWork& w) {
  const Problem& p = problem_;
  const MlpLayout& L = p.layout;
  const int B = w.B, H = w.H;
  mark(w, 0);
  EQPM_CUDA_CHECK(cudaMemsetAsync(w.sc, 0, sizeof(StepScalars), stream_));
  launch_gather_rows(w.rows, B, x_all_.data(), y_all_.data(), t_all_.data(), L.input_dim(), H,
                     y_b_.data(), t_b_.data(), x_b_.data(), stream_);
  launch_mlp_forward(forward_kind_, L, theta_.data(), x_all_.data(), w.rows, B, pre_.data(),
                     mu_.data(), stream_);
  launch_batch_mse(mu_.data(), y_b_.data(), B, H, p.rho, state_.data(), w.sc, stream_);
  mark(w, 1);
}

void CudaBackend::stage_sample(StepWork& w) {
  const Problem& p = problem_;
  launch_perturbations(p.seed, w.dp, w.B, w.S, w.H, p.antithetic, mu_.data(), eps_.data(),
                       yhat_.data(), stream_);
  mark(w, 2);
}

// Pass 1: Rhat_n.
void CudaBackend::stage_regrets(StepWork& w) {
  const long BS = w.BS;
  for (FamilyPlan& f : plans_) {
    if (f.n == 0) continue;
    double* rhat = rhat_.data() + f.begin;
    if (f.structured) {
      launch_class_regrets(f.slot, f.units.data(), f.K, w.set, ctx_, f.E.data(), stream_);
      if (f.pathwise)
        launch_class_dregrets(f.slot, f.units.data(), f.K, w.set, ctx_, f.dE.data(), stream_);
      launch_row_sums(f.E.data(), f.K, BS, f.Etot.data(), stream_);
      launch_structured_mean_regret(f.class_of.data(), f.coef.data(), f.J, f.Etot.data(), f.n,
                                    w.inv_bs, rhat, stream_);
    } else {
      launch_mean_regret(f.slot, f.params.data(), f.n, w.set, ctx_, w.inv_bs, 1.0, rhat, stream_);
    }
  }
  mark(w, 3);
}

// Rbar, the power means (or the host's objective) and the weights omega.
void CudaBackend::stage_weights(StepWork& w) {
  const Problem& p = problem_;
  StepScalars* sc = w.sc;
  launch_agent_stats(N_, rhat_.data(), rbar_.data(), p.rho, state_.data(), rbar_new_.data(),
                     reduce_.data(), stream_);
  launch_finalize_agent_stats(reduce_.data(), reduction_blocks(N_), sc, stream_);
  if (on_host_) {
    host_objective(sc);
  } else {
    launch_power_sums(N_, rhat_.data(), rbar_new_.data(), w_raw_.data(), flat_, sc,
                      reduce_.data(), stream_);
    launch_finalize_power_means(reduce_.data(), reduction_blocks(N_), wsum_, flat_, sc, stream_);
    launch_agent_weights(N_, rbar_new_.data(), w_over_W_.data(), flat_, sc, omega_.data(),
                         stream_);
  }
}

// Pass 2: X = sum omega r (score agents), G = sum omega dr / (B S) (pathwise agents), and the
// advantages A from X.
void CudaBackend::stage_advantages(StepWork& w) {
  const Problem& p = problem_;
  const int B = w.B, S = w.S;
  const long BS = w.BS, BH = w.BH;
  const double inv_bs = w.inv_bs;
  const SampleSet& set = w.set;
  for (FamilyPlan& f : plans_) {
    if (f.n == 0) continue;
    const double* omega = omega_.data() + f.begin;
    double* slab = f.pathwise ? partial_g_.data() + f.slab * BH : partial_x_.data() + f.slab * BS;
    if (f.structured) {
      launch_class_weights(f.seg.data(), f.classes, f.J, f.splits, omega, f.coef.data(),
                           f.Wpart.data(), f.Wc.data(), stream_);
      if (f.pathwise)
        launch_combine_classes(f.Wc.data(), f.K, f.dE.data(), BH, inv_bs, f.tiles, slab, stream_);
      else
        launch_combine_classes(f.Wc.data(), f.K, f.E.data(), BS, 1.0, f.tiles, slab, stream_);
    } else if (f.pathwise) {
      launch_pathwise_partials(f.slot, f.params.data(), f.n, omega, f.tiles, inv_bs, set, ctx_,
                               slab, stream_);
    } else {
      launch_score_partials(f.slot, f.params.data(), f.n, omega, f.tiles, set, ctx_, slab,
                            stream_);
    }
  }
  launch_sum_partials(partial_x_.data(), slabs_x_, BS, X_.data(), stream_);
  launch_sum_partials(partial_g_.data(), slabs_g_, BH, G_.data(), stream_);
  launch_advantages(X_.data(), B, S, p.antithetic, A_.data(), stream_);
}

// g = d loss / d mu on the device (the loss with it).
void CudaBackend::stage_gradient(StepWork& w) {
  const Problem& p = problem_;
  if (!w.equitable) {  // no sampling or regret stages: their events mark the same point
    mark(w, 2);
    mark(w, 3);
  }
  launch_assemble_g(w.B, p.samples, w.H, w.equitable, A_.data(), eps_.data(), G_.data(), mu_.data(),
                    y_b_.data(), w.dp, w.sc, g_.data(), stream_);
  mark(w, 4);
}

// Back-propagation, the gradient norm and the finite-step guard (launch_finalize_step).
void CudaBackend::stage_backward(StepWork& w) {
  const Problem& p = problem_;
  const MlpLayout& L = p.layout;
  const BackwardBuffers bufs{x_b_.data(), act_d_.data(), delta0_.data(), delta1_.data(),
                             params_d_.data()};
  mlp_backward(cublas_, L, w.B, theta_.data(), pre_.data(), g_.data(), bufs, grad_d_.data(), stream_);
  launch_grad_norm_partials(grad_d_.data(), P_, grad_f_.data(), reduce_.data(), stream_);
  launch_finalize_step(reduce_.data(), reduction_blocks(P_), p.grad_clip, w.equitable, w.dp, w.sc,
                       stream_);
  mark(w, 5);
}

// Adam and the commit of Rbar and MSEbar, both skipped on the device by a non-finite step.
void CudaBackend::stage_update(StepWork& w) {
  launch_adam(P_, w.dp, w.sc, grad_f_.data(), theta_.data(), adam_m_.data(), adam_v_.data(),
              stream_);
  launch_commit(N_, w.equitable, w.sc, rbar_new_.data(), rbar_.data(), state_.data(), stream_);
  mark(w, 6);
}

void CudaBackend::host_objective(StepScalars* sc) {
  const size_t bytes = static_cast<size_t>(N_) * sizeof(double);
  EQPM_CUDA_CHECK(cudaMemcpyAsync(host_rhat_.data(), rhat_.data(), bytes, cudaMemcpyDeviceToHost, stream_));
  EQPM_CUDA_CHECK(cudaMemcpyAsync(host_rbar_.data(), rbar_new_.data(), bytes, cudaMemcpyDeviceToHost, stream_));
  sync();
  LocalReducer here;
  host_values_[0] = objective_->evaluate(host_rhat_.data(), host_agents_, here, nullptr);
  host_values_[1] = objective_->evaluate(host_rbar_.data(), host_agents_, here, host_omega_.data());
  // From pageable memory: each copy has read its source when the call returns.
  EQPM_CUDA_CHECK(cudaMemcpyAsync(&sc->mhat, &host_values_[0], sizeof(double), cudaMemcpyHostToDevice, stream_));
  EQPM_CUDA_CHECK(cudaMemcpyAsync(&sc->mbar, &host_values_[1], sizeof(double), cudaMemcpyHostToDevice, stream_));
  EQPM_CUDA_CHECK(cudaMemcpyAsync(omega_.data(), host_omega_.data(), bytes, cudaMemcpyHostToDevice, stream_));
}

// The step's parameter block: the values a captured graph must not bake in, uploaded
// ahead of the step on its stream.
void CudaBackend::upload_step(const StepSpec& spec) {
  const Problem& p = problem_;
  const int B = static_cast<int>(spec.rows.size());
  StepParams hp;
  hp.step = spec.step;
  hp.batch = B;
  hp.beta = spec.beta;
  hp.sigma = spec.sigma > 0 ? spec.sigma : p.sigma;
  hp.adam = step::adam_step(p.adam_beta1, p.adam_beta2, p.adam_eps, spec.lr, p.weight_decay,
                            static_cast<double>(adam_step_ + 1));
  std::memcpy(step_host_.data(), &hp, sizeof hp);
  for (int b = 0; b < B; ++b) {
    const std::int64_t r = spec.rows[static_cast<size_t>(b)];
    std::memcpy(step_host_.data() + kStepRowsOffset + sizeof(std::int64_t) * b, &r, sizeof r);
  }
  EQPM_CUDA_CHECK(cudaMemcpyAsync(step_block_.data(), step_host_.data(),
                                  kStepRowsOffset + sizeof(std::int64_t) * B,
                                  cudaMemcpyHostToDevice, stream_));
}

// Runs one step of this shape: eagerly (with stage events), or by replaying its graph,
// captured on the shape's third step: its first eager step has loaded every kernel (and
// cuBLAS's choice for these sizes), so capturing loads nothing, and its second, warm one
// gives the stage shares a replay's wall time is split by. Returns the graph entry (null
// without graphs) and whether the step was a replay.
CudaBackend::GraphEntry* CudaBackend::launch_step(int B, bool eq, bool* replay) {
  GraphEntry* entry = use_graphs_ ? &graph_entry(B, eq) : nullptr;
  const auto captured = std::count_if(graphs_.begin(), graphs_.end(),
                                      [](const GraphEntry& g) { return g.exec != nullptr; });
  if (entry && !entry->exec && entry->runs >= 2 && captured < kMaxGraphs &&
      !capture_graph(*entry)) {
    entry = nullptr;  // this step and the following ones run without graphs
  }
  *replay = entry && entry->exec;
  if (*replay) {
    EQPM_CUDA_CHECK(cudaGraphLaunch(entry->exec, stream_));
    diagnostics_.graph_replays += 1;
  } else {
    enqueue_step(B, eq, events_);
    diagnostics_.eager_steps += 1;
  }
  if (entry) entry->runs += 1;
  return entry;
}

// Stage times: measured with events on eager steps; a replay's wall time is shared out in
// the proportions of its shape's last warm eager step (never the cold first one).
void CudaBackend::account_stage_times(GraphEntry* entry, bool replay, double wall) {
  std::array<double, kStageEvents - 1> stage{};
  if (!replay) {
    double total = 0.0;
    for (int i = 0; i + 1 < kStageEvents; ++i) {
      float ms = 0.0f;
      EQPM_CUDA_CHECK(cudaEventElapsedTime(&ms, events_[i], events_[i + 1]));
      stage[static_cast<size_t>(i)] = 1e-3 * ms;
      total += 1e-3 * ms;
    }
    if (entry && entry->runs >= 2 && total > 0)
      for (size_t i = 0; i < stage.size(); ++i) entry->fraction[i] = stage[i] / total;
  } else {
    for (size_t i = 0; i < stage.size(); ++i) stage[i] = wall * entry->fraction[i];
  }
  times_.forward += stage[0];
  times_.sampling += stage[1];
  times_.regrets += stage[2];
  times_.reductions += stage[3];
  times_.backward += stage[4];
  times_.optimiser += stage[5];
}

void CudaBackend::download_trace(int B, bool eq, StepTrace& trace) {
  const Problem& p = problem_;
  const size_t BH = static_cast<size_t>(B) * p.layout.output_dim(), BS = static_cast<size_t>(B) * p.samples;
  const size_t H = static_cast<size_t>(p.layout.output_dim());
  trace.mu.resize(BH);
  mu_.download(trace.mu.data(), BH, stream_);
  trace.eps.resize(eq ? BS * H : 0);
  if (eq) eps_.download(trace.eps.data(), BS * H, stream_);
  trace.advantage.resize(eq ? BS : 0);
  if (eq) A_.download(trace.advantage.data(), BS, stream_);
  trace.g.resize(BH);
  g_.download(trace.g.data(), BH, stream_);
  trace.grad.resize(static_cast<size_t>(P_));
  grad_f_.download(trace.grad.data(), static_cast<size_t>(P_), stream_);
  sync();
  trace.rhat = eq ? to_population_order(rhat_) : std::vector<double>();
  trace.rbar = eq ? to_population_order(rbar_new_) : std::vector<double>();
  trace.omega = eq ? to_population_order(omega_) : std::vector<double>();
}

StepStats CudaBackend::step_impl(const StepSpec& spec, StepTrace* trace) {
  using Clock = std::chrono::steady_clock;
  const int B = static_cast<int>(spec.rows.size());
  const bool eq = spec.beta < 1.0;
  const auto t0 = Clock::now();
  upload_step(spec);
  bool replay = false;
  GraphEntry* entry = launch_step(B, eq, &replay);
  scalars_.download(scalars_host_.data(), 1, stream_);
  sync();
  account_stage_times(entry, replay, std::chrono::duration<double>(Clock::now() - t0).count());

  const StepScalars& sc = scalars_host_[0];
  StepStats st;
  st.loss = sc.loss;
  st.mse = sc.mse;
  st.grad_norm = sc.grad_norm;
  st.finite = sc.finite != 0;
  if (eq) {
    st.power_mean = sc.mhat;
    st.smoothed_power_mean = sc.mbar;
    st.mean_regret = sc.sum_hat / static_cast<double>(N_);
    st.max_regret = sc.rmax_hat;
  }
  if (trace) download_trace(B, eq, *trace);
  if (st.finite) {
    adam_step_ += 1;
    if (eq) rbar_started_ = true;
  }
  return st;
}

bool CudaBackend::capture_graph(GraphEntry& entry) {
  cudaGraph_t graph = nullptr;
  try {
    EQPM_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    try {
      enqueue_step(entry.batch, entry.equitable, nullptr);
    } catch (...) {
      cudaGraph_t broken = nullptr;
      EQPM_CUDA_REPORT(cudaStreamEndCapture(stream_, &broken));
      if (broken) EQPM_CUDA_REPORT(cudaGraphDestroy(broken));
      throw;
    }
    EQPM_CUDA_CHECK(cudaStreamEndCapture(stream_, &graph));
    const cudaError_t inst = cudaGraphInstantiate(&entry.exec, graph, 0);
    EQPM_CUDA_REPORT(cudaGraphDestroy(graph));
    EQPM_CUDA_CHECK(inst);
    diagnostics_.graph_captures += 1;
    return true;
  } catch (const Error& e) {
    (void)cudaGetLastError();
    entry.exec = nullptr;
    diagnostics_.graph_capture_failures += 1;
    diagnostics_.last_capture_error = e.what();
    if (problem_.cuda_graphs == CudaGraphs::on)
      throw Error(std::string("CUDA graph capture failed (cuda_graphs = on): ") + e.what());
    // Graphs only save launch overhead: under `auto` a driver or library that cannot capture
    // the step must not stop training. (A real fault shows up again in the eager launch.)
    use_graphs_ = false;
    std::fprintf(stderr,
                 "eqpm: warning: CUDA graph capture failed, steps run without graphs "
                 "(--cuda-graphs on makes this an error): %s\n",
                 e.what());
    return false;
  }
}

std::vector<double> CudaBackend::to_population_order(const DeviceBuffer<double>& d) const {
  std::vector<double> dev(static_cast<size_t>(N_));
  d.download(dev.data(), dev.size(), stream_);
  sync();
  std::vector<double> out(static_cast<size_t>(N_));
  for (size_t i = 0; i < dev.size(); ++i) out[static_cast<size_t>(perm_[i])] = dev[i];
  return out;
}

// The weights alone: what iterate averaging reads after every step (P floats, not the
// Adam moments and per-agent state that state() also brings back).
std::vector<float> CudaBackend::params_impl() const {
  std::vector<float> params(static_cast<size_t>(P_));
  theta_.download(params.data(), params.size(), stream_);
  sync();
  return params;
}

BackendState CudaBackend::state_impl() const {
  BackendState s;
  const size_t P = static_cast<size_t>(P_);
  s.params.resize(P);
  s.adam_m.resize(P);
  s.adam_v.resize(P);
  theta_.download(s.params.data(), P, stream_);
  adam_m_.download(s.adam_m.data(), P, stream_);
  adam_v_.download(s.adam_v.data(), P, stream_);
  DeviceState ds;
  state_.download(&ds, 1, stream_);
  sync();
  s.adam_step = adam_step_;
  s.msebar = ds.msebar;
  if (rbar_started_) s.rbar = to_population_order(rbar_);
  return s;
}

void CudaBackend::set_state_impl(const BackendState& s) {
  const size_t P = static_cast<size_t>(P_);
  theta_.upload(s.params.data(), P, stream_);
  adam_m_.upload(s.adam_m.data(), P, stream_);
  adam_v_.upload(s.adam_v.data(), P, stream_);
  std::vector<double> rbar(static_cast<size_t>(N_), 0.0);
  if (!s.rbar.empty())
    for (size_t i = 0; i < rbar.size(); ++i) rbar[i] = s.rbar[static_cast<size_t>(perm_[i])];
  rbar_.upload(rbar.data(), rbar.size(), stream_);
  DeviceState ds;
  ds.msebar = s.msebar;
  ds.rbar_started = s.rbar.empty() ? 0 : 1;
  state_.upload(&ds, 1, stream_);
  sync();  // the host copies go out of scope
  adam_step_ = s.adam_step;
  rbar_started_ = !s.rbar.empty();
}

void CudaBackend::forward_rows(const std::vector<long>& rows) {
  const MlpLayout& L = problem_.layout;
  const size_t R = rows.size();
  const size_t H = static_cast<size_t>(L.output_dim());
  rows_host_.reserve(R);
  for (size_t i = 0; i < R; ++i) rows_host_[i] = rows[i];
  eval_rows_.reserve(R);
  eval_rows_.upload(rows_host_.data(), R, stream_);
  eval_mu_.reserve(R * H);
  const size_t chunk = std::min<size_t>(R, kEvalChunkRows);
  eval_pre_.reserve(chunk * static_cast<size_t>(L.activation_count()));
  for (size_t c0 = 0; c0 < R; c0 += chunk) {
    const int nc = static_cast<int>(std::min(chunk, R - c0));
    launch_mlp_forward(forward_kind_, L, theta_.data(), x_all_.data(), eval_rows_.data() + c0, nc,
                       eval_pre_.data(), eval_mu_.data() + c0 * H, stream_);
  }
}

std::vector<float> CudaBackend::predict_impl(const std::vector<long>& rows) {
  const size_t H = static_cast<size_t>(problem_.layout.output_dim());
  std::vector<float> mu(rows.size() * H);
  if (rows.empty()) return mu;
  forward_rows(rows);
  eval_mu_.download(mu.data(), mu.size(), stream_);
  sync();
  return mu;
}

EvalResult CudaBackend::evaluate_impl(const std::vector<long>& rows) {
  const Problem& p = problem_;
  const int H = p.layout.output_dim();
  const long R = static_cast<long>(rows.size());
  EvalResult e;
  e.regret.assign(static_cast<size_t>(N_), 0.0);
  if (R == 0) return e;
  forward_rows(rows);
  eval_y_.reserve(static_cast<size_t>(R) * H);
  eval_t_.reserve(static_cast<size_t>(R));
  launch_gather_rows(eval_rows_.data(), static_cast<int>(R), x_all_.data(), y_all_.data(),
                     t_all_.data(), p.layout.input_dim(), H, eval_y_.data(), eval_t_.data(), nullptr,
                     stream_);
  const long n_err = R * H;
  launch_error_partials(eval_mu_.data(), eval_y_.data(), n_err, reduce_.data(), stream_);
  launch_finalize_errors(reduce_.data(), reduction_blocks(n_err), eval_errors_.data(), stream_);
  eval_errors_.download(errors_host_.data(), 2, stream_);
  eval_regret_.reserve(static_cast<size_t>(N_));
  const SampleSet set{eval_mu_.data(), eval_y_.data(), eval_t_.data(), static_cast<int>(R), 1, H};
  for (FamilyPlan& f : plans_) {
    if (f.n == 0) continue;
    launch_mean_regret(f.slot, f.params.data(), f.n, set, ctx_, 1.0, static_cast<double>(R),
                       eval_regret_.data() + f.begin, stream_);
  }
  e.regret = to_population_order(eval_regret_);  // synchronises
  const double denom = static_cast<double>(R) * H;
  e.mse = errors_host_[0] / denom;
  e.mae = errors_host_[1] / denom;
  return e;
}

}  // namespace

std::unique_ptr<Backend> make_cuda_backend() { return std::make_unique<CudaBackend>(); }

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // no driver or no device: not an error for the caller
    return 0;
  }
  return n;
}

std::size_t device_memory_in_use() {
  if (device_count() == 0) return 0;
  std::size_t free_bytes = 0, total_bytes = 0;
  if (cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return total_bytes - free_bytes;
}

std::vector<std::string> device_descriptions() {
  std::vector<std::string> out;
  const int n = device_count();
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) {
      (void)cudaGetLastError();
      out.push_back(std::to_string(i) + ": (properties unavailable)");
      continue;
    }
    char buf[640];
    std::snprintf(buf, sizeof buf, "%d: %s, %.1f GiB, sm_%d%d, %d multiprocessors", i, prop.name,
                  static_cast<double>(prop.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0),
                  prop.major, prop.minor, prop.multiProcessorCount);
    out.emplace_back(buf);
  }
  return out;
}

}  // namespace eqpm::cuda
