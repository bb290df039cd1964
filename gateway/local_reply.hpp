// The one place that turns an Error into a reply of the gateway's own.
#pragma once

#include <string>
#include <string_view>

#include "common/error.hpp"

namespace torii::gateway {

// Appends a complete response (head and small text body) to out.
// `extra_lines`: more header lines ("Name: value\r\n"...), e.g. Cache-Status.
void build_local_reply(Error error, std::string_view request_id, bool head_request, bool close,
                       bool http10_keep_alive, std::string& out, std::string_view extra_lines = {});

// Appends a redirect (308/301/...) to `location`, with a one-line body.
void build_redirect(int status, std::string_view location, std::string_view request_id,
                    bool head_request, bool close, bool http10_keep_alive, std::string& out);

}  // namespace torii::gateway
