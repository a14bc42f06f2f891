"""DHCP on the wire: packets built and parsed with scapy, and a prober."""
