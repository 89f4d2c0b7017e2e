# gateway_limits_redis: RedisLimitStore, the LimitStore shared by every replica (issue #5).
# Included from server/limits/CMakeLists.txt; needs libhiredis-dev (pkg-config "hiredis").
find_package(PkgConfig REQUIRED)
pkg_check_modules(HIREDIS REQUIRED IMPORTED_TARGET GLOBAL hiredis)
# "rediss://" (TLS) goes through OpenSSL: hiredis 0.14 has no TLS (tls_redis_transport.h).
find_package(OpenSSL REQUIRED)
add_library(gateway_limits_redis STATIC ${CMAKE_CURRENT_LIST_DIR}/redis_limit_store.cc
                                        ${CMAKE_CURRENT_LIST_DIR}/redis_replies.cc
                                        ${CMAKE_CURRENT_LIST_DIR}/redis_request_ids.cc
                                        ${CMAKE_CURRENT_LIST_DIR}/hiredis_transport.cc
                                        ${CMAKE_CURRENT_LIST_DIR}/tls_redis_transport.cc)
target_include_directories(gateway_limits_redis PUBLIC ${PROJECT_SOURCE_DIR})
target_link_libraries(gateway_limits_redis PUBLIC gateway_limits absl::random_random
                                                  absl::str_format)
target_link_libraries(gateway_limits_redis PRIVATE PkgConfig::HIREDIS OpenSSL::SSL Threads::Threads)
target_compile_options(gateway_limits_redis PRIVATE ${COPILOT_WARNINGS})
