//! What the configuration tests share.

/// A configuration using every section: node (with konvey, vrrp and ipsec),
/// kawaii (firewall, dnat, peerings, IPsec), konvey and kiwi. Every case is
/// this text with one edit.
pub const BASE: &str = r#"node:
  zone: eu-west-a
  interfaces: {public: pub0, private: priv0, peerings: [peer0], konvey: [lb0]}
  nat_port_range: "1024-65535"
  conntrack_entries: 4096
  bpffs: /sys/fs/bpf/kw-bad-configs
  konvey:
    source_ip: 192.168.50.5
    nat_port_range: "1024-32767"
    health: {interval_ms: 200, timeout_ms: 100, rise: 2, fall: 2, udp_probe: {send: health, expect: "name="}}
  vrrp:
    instances:
      - {name: public-a, vrid: 51, interface: pub0, zone: eu-west-a, virtual_ips: [203.0.113.10/32], advert_interval_ms: 100}
  ipsec: {vici_socket: /run/charon.vici}
kawaii:
  public_ips: [203.0.113.10]
  private_subnet: 10.0.0.0/25
  firewall:
    ingress: [{source: 0.0.0.0/0, protocol: tcp, ports: "22"}]
    egress_policy: accept
    egress: [{destination: 198.51.100.0/24, protocol: udp, ports: "53"}]
  dnat: [{destination: 10.0.0.10, protocol: tcp, ports: "80,443"}]
  vpc_peerings:
    - {subnet: 10.1.0.0/24, policy: drop, ingress: [{protocol: tcp, ports: "1-65535"}], egress: [{protocol: icmp}]}
  ipsec_connections:
    - name: acme-office
      remote_ip: 5.6.7.8
      remote_subnet: 172.16.1.0/24
      pre_shared_key: "correct horse battery staple"
      phase1_dh_group_number: 14
      phase1_integrity_algorithm: SHA512
      phase1_encryption_algorithm: AES256
      phase2_dh_group_number: 14
      phase2_integrity_algorithm: SHA512
      phase2_encryption_algorithm: AES256
konvey:
  vip: 192.168.50.100
  endpoints:
    - {name: web, protocol: tcp, port: 80, backend_port: 7000, backend_ips: [192.168.50.11, 192.168.50.12]}
    - {name: echo, protocol: udp, port: 5300, backend_port: 7001, backend_ips: [192.168.50.11]}
kiwi:
  listen: [127.0.0.1]
  recursors: [192.0.2.53]
  zones:
    - domain: acme.local
      allow_from: [10.0.0.0/25]
      records:
        - {name: www, addresses: [10.0.0.10]}
"#;
