// Refcounted, fixed-size I/O blocks from a per-worker pool.
//
// Sockets read into blocks; body bytes are forwarded as spans of the block
// they arrived in (no copy), and the block goes back to the pool when the
// last in-flight write that references it completes. Single-threaded: a pool
// and its blocks belong to one worker loop.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace torii {

class IoBlockPool;

class IoBlock {
 public:
  static constexpr size_t kSize = size_t{16} * 1024;

  char* data() { return data_; }
  const char* data() const { return data_; }
  size_t capacity() const { return kSize; }

 private:
  friend class IoBlockPool;
  friend class BlockRef;
  uint32_t refs_ = 0;
  IoBlockPool* pool_ = nullptr;
  char data_[kSize];
};

// Shared ownership of one IoBlock (intrusive refcount, not thread-safe).
class BlockRef {
 public:
  BlockRef() = default;
  explicit BlockRef(IoBlock* b) : block_(b) {
    if (block_) ++block_->refs_;
  }
  BlockRef(const BlockRef& o) : BlockRef(o.block_) {}
  BlockRef(BlockRef&& o) noexcept : block_(o.block_) { o.block_ = nullptr; }
  BlockRef& operator=(BlockRef o) noexcept {
    std::swap(block_, o.block_);
    return *this;
  }
  ~BlockRef() { reset(); }

  void reset();
  IoBlock* get() const { return block_; }
  IoBlock* operator->() const { return block_; }
  explicit operator bool() const { return block_ != nullptr; }
  // True when this is the only reference (nobody else reads the bytes).
  bool unique() const { return block_ && block_->refs_ == 1; }

 private:
  IoBlock* block_ = nullptr;
};

class IoBlockPool {
 public:
  explicit IoBlockPool(size_t max_free = 256) : max_free_(max_free) {}
  IoBlockPool(const IoBlockPool&) = delete;
  IoBlockPool& operator=(const IoBlockPool&) = delete;
  ~IoBlockPool();

  BlockRef acquire();
  size_t allocated() const { return allocated_; }
  size_t free_count() const { return free_.size(); }

 private:
  friend class BlockRef;
  void release(IoBlock* b);

  size_t max_free_;
  size_t allocated_ = 0;  // blocks alive (free or in use)
  std::vector<std::unique_ptr<IoBlock>> free_;
};

}  // namespace torii
