build/common/crypt.o: common/crypt.c common/crypt.h common/proto.h
common/crypt.h:
common/proto.h:
