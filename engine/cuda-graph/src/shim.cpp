// The few libtorch CUDA-graph calls tch does not expose, behind a C ABI.
//
// Every function catches C++ exceptions (a c10::Error for a failed capture, say) and
// returns a non-zero status with the message in `err`, so nothing unwinds into Rust.

#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAStream.h>

#include <cstring>
#include <exception>
#include <map>
#include <mutex>
#include <string>

namespace {

void write_error(const std::exception& e, char* err, size_t len) {
  if (err == nullptr || len == 0) return;
  std::string msg = e.what();
  // c10 messages carry a C++ backtrace after the first line; the first line says why.
  auto nl = msg.find('\n');
  if (nl != std::string::npos) msg.resize(nl);
  std::strncpy(err, msg.c_str(), len - 1);
  err[len - 1] = '\0';
}

// The stream a thread ran on before it entered a side stream.
struct SideStream {
  c10::cuda::CUDAStream previous;
  c10::cuda::CUDAStream side;
};

// One side stream per device, taken from the pool once: the pool hands out its streams
// round-robin, and a capture must run on the stream its warm-up ran on (cuBLAS keeps a
// workspace per stream, set up on first use, which must not happen while capturing).
c10::cuda::CUDAStream side_stream(c10::DeviceIndex device) {
  static std::mutex lock;
  static std::map<c10::DeviceIndex, c10::cuda::CUDAStream> streams;
  std::lock_guard<std::mutex> guard(lock);
  auto it = streams.find(device);
  if (it == streams.end()) {
    it = streams.emplace(device, c10::cuda::getStreamFromPool(false, device)).first;
  }
  return it->second;
}

}  // namespace

extern "C" {

int sphinx_cuda_device_count() { return static_cast<int>(c10::cuda::device_count()); }

// Waits for the device, then makes the device's side stream (not the default one, which
// capture refuses) current on this thread; warm-up and capture both run on it.
int sphinx_side_stream_enter(int device, void** out, char* err, size_t len) {
  try {
    auto index = static_cast<c10::DeviceIndex>(device);
    c10::cuda::set_device(index);
    c10::cuda::device_synchronize();
    auto previous = c10::cuda::getCurrentCUDAStream(index);
    auto side = side_stream(index);
    c10::cuda::setCurrentCUDAStream(side);
    *out = new SideStream{previous, side};
    return 0;
  } catch (const std::exception& e) {
    write_error(e, err, len);
    return 1;
  }
}

// Waits for the side stream's work and restores the thread's previous stream.
int sphinx_side_stream_exit(void* handle, char* err, size_t len) {
  auto* s = static_cast<SideStream*>(handle);
  try {
    s->side.synchronize();
    c10::cuda::setCurrentCUDAStream(s->previous);
    delete s;
    return 0;
  } catch (const std::exception& e) {
    c10::cuda::setCurrentCUDAStream(s->previous);
    delete s;
    write_error(e, err, len);
    return 1;
  }
}

// Starts capturing this thread's work on the current (side) stream into a new graph with
// its own memory pool. Thread-local mode: other threads' CUDA calls do not break it.
int sphinx_graph_begin(void** out, char* err, size_t len) {
  auto* graph = new at::cuda::CUDAGraph();
  try {
    graph->capture_begin({0, 0}, cudaStreamCaptureModeThreadLocal);
    *out = graph;
    return 0;
  } catch (const std::exception& e) {
    delete graph;
    write_error(e, err, len);
    return 1;
  }
}

// Ends the capture and instantiates the graph; on failure the graph is freed.
int sphinx_graph_end(void* handle, char* err, size_t len) {
  auto* graph = static_cast<at::cuda::CUDAGraph*>(handle);
  try {
    graph->capture_end();
    return 0;
  } catch (const std::exception& e) {
    delete graph;
    write_error(e, err, len);
    return 1;
  }
}

// Launches the whole graph on the thread's current stream (one launch for every kernel).
int sphinx_graph_replay(void* handle, char* err, size_t len) {
  try {
    static_cast<at::cuda::CUDAGraph*>(handle)->replay();
    return 0;
  } catch (const std::exception& e) {
    write_error(e, err, len);
    return 1;
  }
}

void sphinx_graph_free(void* handle) {
  try {
    delete static_cast<at::cuda::CUDAGraph*>(handle);
  } catch (...) {
  }
}

}  // extern "C"
