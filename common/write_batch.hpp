// A vectored write in the making: owned bytes (rewritten heads, chunk-size
// lines) and borrowed spans of refcounted read blocks (bodies, no copy),
// submitted as one uv_write. Batches come from a per-worker pool so the hot
// path does not allocate once the pool is warm.
#pragma once

#include <uv.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/io_block.hpp"

namespace torii {

class WriteBatch;

class WriteCompletion {
 public:
  virtual void on_write_done(WriteBatch& batch, int status) = 0;

 protected:
  ~WriteCompletion() = default;
};

class WriteBatchPool;

class WriteBatch {
 public:
  // Owned bytes: the returned string is appended to; call end_owned() after.
  std::string& owned() { return owned_; }
  void append_owned(std::string_view s);
  // Borrowed bytes: `block` keeps them alive until the write completes.
  void append_borrowed(const BlockRef& block, std::string_view bytes);
  // Borrowed bytes kept alive by a shared owner (a cached response).
  void append_shared(const std::shared_ptr<const void>& owner, std::string_view bytes);
  // Static bytes (string literals).
  void append_static(std::string_view bytes);
  bool empty() const { return segments_.empty() && owned_.size() == owned_marked_; }
  // Calls fn(std::string_view) for every byte range, in order (TLS encrypts them).
  template <typename Fn>
  void for_each_span(Fn&& fn) {
    mark_owned();
    for (const Segment& s : segments_) {
      fn(std::string_view(s.ptr ? s.ptr : owned_.data() + s.off, s.len));
    }
  }
  size_t bytes() const;

  // Writes what the socket takes now and queues the rest; `done` is called
  // only for a queued part (a fully written batch has nothing to report).
  // The batch returns to its pool afterwards. Returns a libuv error (the
  // batch is already recycled then).
  int submit(uv_stream_t* stream, WriteCompletion* done);

 private:
  friend class WriteBatchPool;
  struct Segment {
    const char* ptr;  // nullptr: owned_[off, off+len)
    size_t off;
    size_t len;
  };
  void mark_owned();
  void clear();

  uv_write_t req_{};
  WriteBatchPool* pool_ = nullptr;
  WriteCompletion* done_ = nullptr;
  std::string owned_;
  size_t owned_marked_ = 0;
  std::vector<Segment> segments_;
  std::vector<BlockRef> refs_;
  std::vector<std::shared_ptr<const void>> shared_refs_;
  std::vector<uv_buf_t> bufs_;
};

// Appends `spans` (bytes of `block`) as one chunk of chunked framing:
// "<hex size>\r\n" + spans + "\r\n". Nothing for an empty total.
void append_chunk(WriteBatch& batch, const BlockRef& block,
                  const std::vector<std::string_view>& spans);
// Appends every span as is.
void append_spans(WriteBatch& batch, const BlockRef& block,
                  const std::vector<std::string_view>& spans);
inline constexpr std::string_view kLastChunk = "0\r\n\r\n";

class WriteBatchPool {
 public:
  explicit WriteBatchPool(size_t max_free = 1024) : max_free_(max_free) {}
  WriteBatchPool(const WriteBatchPool&) = delete;
  WriteBatchPool& operator=(const WriteBatchPool&) = delete;

  // The batch belongs to the caller until submit() or recycle().
  WriteBatch* acquire();
  void recycle(WriteBatch* b);

 private:
  size_t max_free_;
  std::vector<std::unique_ptr<WriteBatch>> free_;
};

}  // namespace torii
