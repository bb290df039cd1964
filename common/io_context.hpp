// Per-worker I/O infrastructure shared by the client and upstream sides.
#pragma once

#include <uv.h>

#include "common/io_block.hpp"
#include "common/write_batch.hpp"

namespace torii {

struct IoContext {
  explicit IoContext(uv_loop_t* l) : loop(l) {}
  uv_loop_t* loop;
  IoBlockPool blocks;
  WriteBatchPool batches;
  // Backpressure watermarks on a stream's queued output (bytes).
  size_t high_watermark = size_t{256} * 1024;
  size_t low_watermark = size_t{64} * 1024;
  // TLS ciphertext is read here and handed to OpenSSL at once (which copies
  // it): one buffer per worker, none per connection.
  char tls_scratch[16 * 1024];
};

// A read buffer: the tail of a refcounted block, reused while it has room.
// Bytes [parsed, filled) are received but not yet consumed by a parser.
class ReadBuffer {
 public:
  // Space for the next read (alloc_cb).
  uv_buf_t prepare(IoBlockPool& pool);
  void commit(size_t n) { filled_ += n; }
  const char* unparsed_data() const { return block_ ? block_->data() + parsed_ : nullptr; }
  size_t unparsed_size() const { return filled_ - parsed_; }
  void consume(size_t n) { parsed_ += n; }
  const BlockRef& block() const { return block_; }
  bool full() const { return block_ && filled_ == block_->capacity(); }
  // Drops the block when nothing unparsed remains (idle connections hold no buffer).
  void release_if_empty();

 private:
  BlockRef block_;
  size_t parsed_ = 0;
  size_t filled_ = 0;
};

}  // namespace torii
