# The layering rule, checked when CMake configures: a target that links a
# layer above its own (directly or through its poledger_* dependencies)
# stops the build with a message naming both.
#
#   base -> core -> eventstore -> ledger -> api -> server | clients | bench
#
# core is pure domain (no RocksDB, no gRPC); eventstore knows no domain;
# ledger and api speak no gRPC; clients and benchmarks never link server.

# Collects into ${out} every library `target` links, following poledger_*
# targets transitively.
function(poledger_collect_links target out)
  set(seen ${${out}})
  set(queue ${target})
  while(queue)
    list(POP_FRONT queue t)
    if(NOT TARGET ${t})
      continue()
    endif()
    get_target_property(type ${t} TYPE)
    set(libs)
    if(NOT type STREQUAL "INTERFACE_LIBRARY")
      get_target_property(direct ${t} LINK_LIBRARIES)
      if(direct)
        list(APPEND libs ${direct})
      endif()
    endif()
    get_target_property(iface ${t} INTERFACE_LINK_LIBRARIES)
    if(iface)
      list(APPEND libs ${iface})
    endif()
    foreach(lib ${libs})
      string(REGEX REPLACE "^\\$<LINK_ONLY:(.*)>$" "\\1" lib "${lib}")
      if(lib IN_LIST seen)
        continue()
      endif()
      list(APPEND seen ${lib})
      if(lib MATCHES "^poledger_")
        list(APPEND queue ${lib})
      endif()
    endforeach()
  endwhile()
  set(${out} ${seen} PARENT_SCOPE)
endfunction()

# poledger_forbid_links(TARGETS t... FORBIDDEN f...)
function(poledger_forbid_links)
  cmake_parse_arguments(ARG "" "" "TARGETS;FORBIDDEN" ${ARGN})
  foreach(t ${ARG_TARGETS})
    if(NOT TARGET ${t})
      message(FATAL_ERROR "layering: no target ${t} to check")
    endif()
    set(links)
    poledger_collect_links(${t} links)
    foreach(f ${ARG_FORBIDDEN})
      if(f IN_LIST links)
        message(FATAL_ERROR "layering: ${t} links ${f}, a layer above its "
                            "own (see cmake/layers.cmake)")
      endif()
    endforeach()
  endforeach()
endfunction()

function(poledger_check_layers)
  set(grpc gRPC::grpc++ gRPC::grpc++_reflection poledger_api_proto_grpc
      poledger_health_proto_grpc)
  poledger_forbid_links(TARGETS poledger_core FORBIDDEN
    poledger_eventstore poledger_eventstore_rocksdb poledger_ledger
    poledger_api poledger_server RocksDB::rocksdb-shared ${grpc})
  poledger_forbid_links(TARGETS poledger_eventstore poledger_eventstore_rocksdb
    FORBIDDEN poledger_core poledger_ledger poledger_api poledger_server ${grpc})
  poledger_forbid_links(TARGETS poledger_ledger FORBIDDEN
    poledger_api poledger_server poledger_eventstore_rocksdb
    RocksDB::rocksdb-shared ${grpc})
  poledger_forbid_links(TARGETS poledger_api FORBIDDEN poledger_server ${grpc})
  poledger_forbid_links(
    TARGETS poledger_audit poledger_remote_event_store poledger-audit poctl
            poledger-notifier poledger-loadgen ledger_bench
            poledger_bench_requests
    FORBIDDEN poledger_server)
endfunction()
