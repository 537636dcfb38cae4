# shellcheck shell=bash
#
# tlsca.sh - a private CA and certificates made with openssl, for tests
# that need real TLS (source it after lib.sh).  Nothing here talks to the
# network.
#
#   tls_ca DIR                 a CA in DIR: ca.pem, ca.key (EC P-256, 2 days)
#   tls_cert DIR NAME SAN [KIND [DAYS [CN]]]
#                              NAME.pem / NAME.key signed by DIR's CA;
#                              SAN an openssl subjectAltName list such as
#                              "DNS:localhost,IP:127.0.0.1"; KIND server
#                              (default), client or both (extendedKeyUsage);
#                              DAYS default 2; a negative DAYS gives a
#                              certificate that has already expired; CN
#                              the Common Name (default NAME; "" none: etcd
#                              with auth and --client-cert-auth refuses a
#                              gateway client whose certificate has one)
#   tls_etcd_setup DIR         a CA, a server certificate for 127.0.0.1 /
#                              localhost and a client certificate "root"
#                              in DIR; sets and exports T_ETCD_TLS_DIR, so
#                              that t_etcd_start / t_etcd_cluster3 start
#                              members serving clients over TLS with
#                              --client-cert-auth, and ETCDCTL_CACERT /
#                              ETCDCTL_CERT / ETCDCTL_KEY for etcdctl
#
# Keys are EC P-256: fast to make, accepted by etcd (Go), curl/OpenSSL,
# nghttp2 and grpcio.

tls_ca() {
    local dir=${1:?tls_ca DIR}
    mkdir -p "$dir" || return 1
    openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$dir/ca.key" -out "$dir/ca.pem" -days 2 -subj "/CN=libresolver test CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" >/dev/null 2>&1
}

tls_cert() {
    local dir=${1:?tls_cert DIR NAME SAN} name=${2:?tls_cert DIR NAME SAN} san=${3:?}
    local kind=${4:-server} days=${5:-2} cn=${6-$2} eku subj
    case $kind in
    server) eku=serverAuth ;;
    client) eku=clientAuth ;;
    both) eku=serverAuth,clientAuth ;;
    *) echo "tls_cert: KIND is server, client or both" >&2; return 1 ;;
    esac
    subj="/O=libresolver test${cn:+/CN=$cn}"
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$dir/$name.key" -out "$dir/$name.csr" -subj "$subj" >/dev/null 2>&1 ||
        return 1
    printf 'subjectAltName=%s\nextendedKeyUsage=%s\nbasicConstraints=CA:FALSE\n' "$san" "$eku" \
        >"$dir/$name.ext"
    if ((days < 0)); then
        # openssl 3.0's x509 cannot backdate: `openssl ca` can (-startdate,
        # -enddate).  Valid from 2 days ago until |DAYS| - 1 days ago.
        local start end
        start=$(date -u -d "-2 days" +%Y%m%d%H%M%SZ)
        end=$(date -u -d "$((-days - 1)) days ago" +%Y%m%d%H%M%SZ)
        mkdir -p "$dir/ca.db" && : >"$dir/ca.db/index" && echo 01 >"$dir/ca.db/serial"
        printf '[ca]\ndefault_ca=d\n[d]\ndir=%s\ndatabase=$dir/ca.db/index\nserial=$dir/ca.db/serial\nnew_certs_dir=$dir/ca.db\ndefault_md=sha256\npolicy=p\nunique_subject=no\n[p]\norganizationName=supplied\ncommonName=optional\n' \
            "$dir" >"$dir/ca.cnf"
        openssl ca -batch -config "$dir/ca.cnf" -cert "$dir/ca.pem" -keyfile "$dir/ca.key" \
            -in "$dir/$name.csr" -startdate "$start" -enddate "$end" \
            -extfile "$dir/$name.ext" -out "$dir/$name.pem" -notext >/dev/null 2>&1 || return 1
    else
        openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
            -CAcreateserial -days "$days" -extfile "$dir/$name.ext" -out "$dir/$name.pem" \
            >/dev/null 2>&1 || return 1
    fi
    rm -f "$dir/$name.csr" "$dir/$name.ext"
}

tls_etcd_setup() {
    local dir=${1:?tls_etcd_setup DIR}
    tls_ca "$dir" || return 1
    tls_cert "$dir" etcd-server "DNS:localhost,IP:127.0.0.1" both || return 1
    tls_cert "$dir" root "DNS:root" client || return 1
    T_ETCD_TLS_DIR=$dir
    ETCDCTL_CACERT=$dir/ca.pem
    ETCDCTL_CERT=$dir/root.pem
    ETCDCTL_KEY=$dir/root.key
    export T_ETCD_TLS_DIR ETCDCTL_CACERT ETCDCTL_CERT ETCDCTL_KEY
}
