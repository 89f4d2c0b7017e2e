// The tenant a call is made for: who the caller is to the gateway, and what it sends upstream.
#ifndef COPILOT_GATEWAY_SERVER_CORE_TENANT_H_
#define COPILOT_GATEWAY_SERVER_CORE_TENANT_H_

#include <string>

namespace copilot::gateway {

// Plain data. Holds the licence: never log it.
struct Tenant {
  // Configured identifier; safe to log and to use as a metrics label.
  std::string id;
  // Sent upstream as meta_data.user_data.licence; empty sends none.
  std::string licence;
};

}  // namespace copilot::gateway

#endif  // COPILOT_GATEWAY_SERVER_CORE_TENANT_H_
