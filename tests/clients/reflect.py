"""A gRPC client that knows nothing of Herd's code: it learns the API through server
reflection, as grpcurl does, and prints what it got as one JSON object.

    reflect.py SOCKET services
    reflect.py SOCKET call SERVICE METHOD JSON_REQUEST
    reflect.py SOCKET raw SERVICE METHOD HEX_BYTES    (sends the bytes as the request body)
"""

import json
import sys

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


def main(argv):
    socket, mode = argv[1], argv[2]
    # gRPC core would send the socket's path as :authority, which HTTP/2 servers such as
    # hyper refuse; grpcurl says "localhost" for unix sockets too.
    channel = grpc.insecure_channel(
        f"unix://{socket}", options=[("grpc.default_authority", "localhost")]
    )
    database = ProtoReflectionDescriptorDatabase(channel)
    if mode == "services":
        print(json.dumps({"services": sorted(database.get_services())}))
        return 0
    service, method = argv[3], argv[4]
    path = f"/{service}/{method}"
    try:
        if mode == "call":
            pool = descriptor_pool.DescriptorPool(database)
            found = pool.FindServiceByName(service).FindMethodByName(method)
            request_class = message_factory.GetMessageClass(found.input_type)
            response_class = message_factory.GetMessageClass(found.output_type)
            request = json_format.Parse(argv[5], request_class())
            call = channel.unary_unary(
                path,
                request_serializer=request_class.SerializeToString,
                response_deserializer=response_class.FromString,
            )
            response = call(request, timeout=10)
            print(json.dumps({"response": json_format.MessageToDict(response)}))
        elif mode == "raw":
            call = channel.unary_unary(path)
            call(bytes.fromhex(argv[5]), timeout=10)
            print(json.dumps({"code": "OK"}))
    except grpc.RpcError as error:
        print(json.dumps({"code": error.code().name, "details": error.details()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
