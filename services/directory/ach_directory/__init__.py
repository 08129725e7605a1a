"""The resource directory (Open Referral HSDS): the services the network can refer to."""
