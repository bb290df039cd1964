#include "common/io_context.hpp"

#include <cstring>

namespace torii {

uv_buf_t ReadBuffer::prepare(IoBlockPool& pool) {
  if (block_ && parsed_ == filled_ && block_.unique()) {
    parsed_ = filled_ = 0;  // nobody else reads these bytes: rewind
  }
  if (!block_ || filled_ == block_->capacity()) {
    // Start a new block, carrying over unparsed bytes (a partial head).
    BlockRef fresh = pool.acquire();
    size_t carry = block_ ? filled_ - parsed_ : 0;
    if (carry > 0) std::memcpy(fresh->data(), block_->data() + parsed_, carry);
    block_ = std::move(fresh);
    parsed_ = 0;
    filled_ = carry;
    if (filled_ == block_->capacity()) return uv_buf_init(nullptr, 0);
  }
  return uv_buf_init(block_->data() + filled_, static_cast<unsigned>(block_->capacity() - filled_));
}

void ReadBuffer::release_if_empty() {
  if (block_ && parsed_ == filled_) {
    block_.reset();
    parsed_ = filled_ = 0;
  }
}

}  // namespace torii
