#include "common/io_block.hpp"

namespace torii {

void BlockRef::reset() {
  if (block_ == nullptr) return;
  if (--block_->refs_ == 0) block_->pool_->release(block_);
  block_ = nullptr;
}

IoBlockPool::~IoBlockPool() = default;

BlockRef IoBlockPool::acquire() {
  std::unique_ptr<IoBlock> block;
  if (!free_.empty()) {
    block = std::move(free_.back());
    free_.pop_back();
  } else {
    block = std::make_unique<IoBlock>();
    block->pool_ = this;
    ++allocated_;
  }
  // Ownership now travels with the refcount; release() takes it back.
  return BlockRef(block.release());
}

void IoBlockPool::release(IoBlock* b) {
  std::unique_ptr<IoBlock> owned(b);
  if (free_.size() < max_free_) {
    free_.push_back(std::move(owned));
  } else {
    --allocated_;
  }
}

}  // namespace torii
